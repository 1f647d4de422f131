//! The one mapping from the gateway's [`Error`] to an HTTP answer: status, JSON body and
//! `Retry-After`. Every route answers errors through here, so a `type` always comes with the
//! same status.
//!
//! The body carries the AI API spec's `HTTPError` shape (`{"detail": {"msg"}}`), or for
//! validation failures its `HTTPValidationError` (`{"detail": [{"loc", "msg", "type"}]}`), so
//! existing clients parse it, plus `{"error": {"status", "type", "message", "field"?}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::error::{Error, Kind};

/// A JSON error answer with a status of its own, for the few routes whose statuses are not
/// one of [`Kind`]'s (the remote signer's 480–482, go-livepeer's numbers).
pub(crate) fn json_error(
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

/// The status of each kind of error.
pub(crate) fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::InvalidRequest | Kind::BodyUnreadable | Kind::InvalidMultipart => {
            StatusCode::BAD_REQUEST
        }
        Kind::Unauthorized | Kind::InvalidApiKey => StatusCode::UNAUTHORIZED,
        Kind::Forbidden | Kind::StreamRefused | Kind::NotStreamOwner | Kind::KeyNotAllowed => {
            StatusCode::FORBIDDEN
        }
        Kind::RateLimited | Kind::StreamLimit => StatusCode::TOO_MANY_REQUESTS,
        Kind::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
        Kind::StreamExists => StatusCode::CONFLICT,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        Kind::StreamStopped => StatusCode::GONE,
        Kind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedIngest | Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Kind::OrchestratorFailed => StatusCode::BAD_GATEWAY,
        Kind::NoOrchestrator
        | Kind::OverMaxPrice
        | Kind::OrchestratorsUnavailable
        | Kind::OrchestratorsBusy
        | Kind::PaymentRefused
        | Kind::TooManyStreams
        | Kind::AsyncJobsFull
        | Kind::TrickleUnavailable
        | Kind::AuthWebhookUnavailable
        | Kind::KeyStoreUnavailable
        | Kind::LedgerUnavailable
        | Kind::PriceUnavailable
        | Kind::ResultStoreFull
        | Kind::GatewayOverloaded => StatusCode::SERVICE_UNAVAILABLE,
        Kind::OrchestratorTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The JSON body of `e`'s answer (see the module docs), which an async job's result also
/// carries when the job failed.
pub(crate) fn body(e: &Error) -> serde_json::Value {
    let mut error = json!({
        "status": status(e.kind()).as_u16(),
        "type": e.kind().name(),
        "message": e.message(),
    });
    if let Some(field) = e.field_name() {
        error["field"] = json!(field);
    }
    for (name, value) in e.details() {
        error[*name] = json!(value);
    }
    if e.field_errors().is_empty() {
        json!({ "detail": { "msg": e.message() }, "error": error })
    } else {
        json!({ "detail": e.field_errors(), "error": error })
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut resp = (status(self.kind()), Json(body(&self))).into_response();
        if let Some(seconds) = self.retry_after_secs() {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

/// The path parameters of a route, as [`axum::extract::Path`] takes them, refused as the JSON
/// 400 the other errors are: axum's own refusal of a path that is not UTF-8 (`/live/%FF/…`)
/// is plain text, which a JSON client cannot read.
#[derive(Debug)]
pub(crate) struct JsonPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for JsonPath<T>
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(e) => Err(Error::new(Kind::InvalidRequest, e.body_text()).field("path")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_error_answers_its_status_type_field_and_retry_after() {
        let resp = Error::new(Kind::OrchestratorsBusy, "all busy").into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let json = body(resp).await;
        assert_eq!(json["error"]["type"], "orchestrators_busy");
        assert_eq!(json["error"]["status"], 503);
        assert_eq!(json["detail"]["msg"], "all busy");
        assert!(json["error"].get("field").is_none());

        let resp = Error::too_large(10).into_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(body(resp).await["error"]["field"], "body");
    }

    fn field(loc: &[&str], msg: &str, kind: &str) -> FieldError {
        FieldError {
            loc: loc.iter().map(|s| (*s).to_owned()).collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    #[tokio::test]
    async fn validation_errors_list_every_field_in_the_spec_shape() {
        let errors = vec![
            field(&["body", "prompt"], "field required", "missing"),
            field(&["body", "width"], "too big", "value_error"),
        ];
        let resp = Error::validation(errors).into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let json = body(resp).await;
        assert_eq!(json["detail"][1]["loc"][1], "width");
        assert_eq!(json["error"]["field"], "prompt");
        assert_eq!(json["error"]["message"], "body.prompt: field required; body.width: too big");
    }
}
