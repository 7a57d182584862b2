use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = quota_server::Config::parse();
    match quota_server::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quota-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
