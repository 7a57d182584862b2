use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = quota_server::Config::parse();
    if config.print_openapi {
        return match serde_json::to_string_pretty(&quota_server::openapi::openapi_json()) {
            Ok(json) => {
                println!("{json}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("quota-server: cannot write the OpenAPI document: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match quota_server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quota-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
