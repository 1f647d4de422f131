//! The one place that turns errors into HTTP responses: a JSON body with the status, a stable
//! `type`, a human message and, where one field is at fault, its name.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::orchestrator::SelectError;

/// A JSON error response. It carries the AI API spec's `HTTPError` shape (`{"detail": {"msg"}}`)
/// so existing clients parse it, plus `{"error": {"status", "type", "message", "field"?}}`.
pub fn json_error(
    status: StatusCode,
    kind: &str,
    message: String,
    field: Option<&str>,
) -> Response {
    let mut error = json!({ "status": status.as_u16(), "type": kind, "message": message });
    if let Some(field) = field {
        error["field"] = json!(field);
    }
    (status, Json(json!({ "detail": { "msg": message }, "error": error }))).into_response()
}

/// 422 with the spec's `HTTPValidationError` (`{"detail": [{"loc", "msg", "type"}]}`), plus
/// the `error` summary naming the first offending field.
pub fn validation_error(errors: &[crate::ai::validate::FieldError]) -> Response {
    let field = errors.first().map(|e| e.loc.iter().skip(1).cloned().collect::<Vec<_>>().join("."));
    let message = errors
        .iter()
        .map(|e| format!("{}: {}", e.loc.join("."), e.msg))
        .collect::<Vec<_>>()
        .join("; ");
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let body = json!({
        "detail": errors,
        "error": { "status": status.as_u16(), "type": "validation_error", "message": message, "field": field },
    });
    (status, Json(body)).into_response()
}

/// No orchestrator could be selected: 503 with `Retry-After`, naming the job and the reason.
pub fn select_error(e: &SelectError) -> Response {
    let (kind, retry_after) = match e {
        SelectError::NotOffered(_) => ("no_orchestrator", "30"),
        SelectError::OverPrice { .. } => ("over_max_price", "60"),
        SelectError::Unavailable { .. } => ("orchestrators_unavailable", "2"),
    };
    let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, kind, e.to_string(), None);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(retry_after));
    resp
}

/// The `Display` of an error followed by those of its sources, so that a message such as
/// "error sending request" also says why.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
