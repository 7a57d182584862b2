//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` descriptions and the wire types' schemas, as the
//! routes are registered (`http::api_routes`, `dev::routes`): a route
//! cannot be served without being described. `GET /api/openapi.json`
//! serves it; `docs/openapi.json` is a copy that a test keeps current.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OpenApi as Document, RefOr, Type};
use utoipa::{Modify, OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::http::{self, AppState};
use crate::dev;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "quota-server",
        description = "The reference quota server of quota-widget: an account's generation slots and units, \
submits checked against them, and the state pushed to the widget. The JSON types are the wire's \
(docs/wire.md); docs/api.md explains the behaviour; docs/kling.md the upstream mode.",
        license(name = "MIT OR Apache-2.0"),
    ),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "quota", description = "The account's state, its event stream, and submits."),
        (name = "session", description = "Signing in and out of the dashboard (a session cookie)."),
        (name = "upstream", description = "Upstream mode (`--upstream kling`): the service's task callbacks."),
        (name = "dev", description = "Development endpoints: only with `--dev` (404 otherwise). Tests drive the widget through every state with them."),
        (name = "meta", description = "Health and this document."),
    ),
    modifiers(&Security, &EveryResponse),
)]
struct ApiDoc;

/// The two ways to authenticate: `Authorization: Bearer <token>`, or the
/// session cookie that `POST /api/session` sets.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An account's token."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                http::SESSION_COOKIE,
                "Set by `POST /api/session`; HttpOnly, SameSite=Strict.",
            ))),
        );
    }
}

/// The headers every response carries, errors and static files included.
struct EveryResponse;

impl Modify for EveryResponse {
    fn modify(&self, doc: &mut Document) {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let csp = HeaderBuilder::new()
            .schema(string().enum_values(Some([http::CONTENT_SECURITY_POLICY])))
            .description(Some("The widget works under this policy, so the server enforces it."))
            .build();
        let nosniff = HeaderBuilder::new().schema(string().enum_values(Some(["nosniff"]))).build();
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response.headers.insert("Content-Security-Policy".into(), csp.clone());
                        response.headers.insert("X-Content-Type-Options".into(), nosniff.clone());
                    }
                }
            }
        }
    }
}

/// The whole document: every route, those of `--dev` and of upstream mode
/// included (tagged), whether this process serves them or not.
pub fn openapi() -> Document {
    let (_, mut doc) = http::api_routes().merge(routes()).merge(dev::routes()).split_for_parts();
    let mut base = ApiDoc::openapi();
    // The routes' paths and schemas into the base's info, tags and security;
    // then the modifiers again, for the paths that came in.
    base.paths = std::mem::take(&mut doc.paths);
    if let Some(components) = doc.components.take() {
        let into = base.components.get_or_insert_with(Default::default);
        into.schemas.extend(components.schemas);
        into.responses.extend(components.responses);
    }
    Security.modify(&mut base);
    EveryResponse.modify(&mut base);
    Links.modify(&mut base);
    base
}

/// How one answer leads to the next request (OpenAPI links): an accepted
/// submit's `task_id` names the request that `DELETE` cancels (if it is
/// queued) and the task that the dev endpoints end. Stateful test tools
/// (Schemathesis) follow them.
struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut Document) {
        let Some(submit) = doc.paths.paths.get_mut("/api/generations").and_then(|p| p.post.as_mut()) else {
            return;
        };
        for status in ["200", "201"] {
            if let Some(RefOr::T(response)) = submit.responses.responses.get_mut(status) {
                let ends = [("SucceedTask", "succeed"), ("FailTask", "fail")].map(|(name, operation)| {
                    (name, operation, format!("Ends the task as {operation}ed (only with --dev)."))
                });
                let cancel = ("CancelRequest", "cancel", "Cancels the request while it is queued (sent with `queue`, it waits: `place`).".to_owned());
                for (name, operation, description) in ends.into_iter().chain([cancel]) {
                    let link = LinkBuilder::new()
                        .operation_id(operation)
                        .parameter("task_id", "$response.body#/task_id")
                        .description(description)
                        .build();
                    response.links.insert(name.to_owned(), RefOr::T(link));
                }
            }
        }
    }
}

/// The document as JSON, as served and as committed in `docs/openapi.json`.
pub fn openapi_json() -> serde_json::Value {
    let mut json = serde_json::to_value(openapi()).unwrap_or_default();
    // utoipa 5.5 writes a Link Object's fields in snake case
    // (`operation_id`); OpenAPI names them in camel case.
    if let Some(paths) = json.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for op in item.values_mut() {
                let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                    continue;
                };
                for links in responses.values_mut().filter_map(|r| r.get_mut("links")?.as_object_mut()) {
                    for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                        for (snake, camel) in
                            [("operation_id", "operationId"), ("operation_ref", "operationRef"), ("request_body", "requestBody")]
                        {
                            if let Some(v) = link.remove(snake) {
                                link.insert(camel.to_owned(), v);
                            }
                        }
                    }
                }
            }
        }
    }
    json
}

/// The route that serves this document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(document))
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)))]
pub async fn document() -> Json<&'static serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    Json(DOC.get_or_init(openapi_json))
}
