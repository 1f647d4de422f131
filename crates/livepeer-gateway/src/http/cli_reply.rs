//! The answers of go-livepeer's CLI routes (`server/handlers.go`), byte for byte where a client
//! can tell: `respondOk`'s bare text, `respondJson`'s JSON, and `http.Error`'s plain-text error
//! with its trailing newline. `livepeer_cli` prints these bodies as they are, so our own JSON
//! error envelope would show up as raw JSON in its terminal.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::orchestrator::price::Price;

/// `respondOk` with a body: 200, text (Go sniffs `text/plain; charset=utf-8` from it).
pub(super) fn text(body: impl Into<String>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

/// `respondOk(w, nil)`: 200 with no body.
pub(super) fn ok() -> Response {
    StatusCode::OK.into_response()
}

/// `respondJson`: 200, `application/json`, `body` already encoded.
pub(super) fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `respondJson` of a value.
pub(super) fn json(value: &serde_json::Value) -> Response {
    json_text(value.to_string())
}

/// `http.Error`: `message` and a newline as plain text, with `nosniff`.
pub(super) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{message}\n"),
    )
        .into_response()
}

/// `respond400`.
pub(super) fn bad_request(message: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// `respond500`.
pub(super) fn internal(message: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// `mustHaveClient`'s answer on a node without an Ethereum client (off-chain).
pub(super) fn missing_eth_client() -> Response {
    internal("missing ETH client")
}

/// A price as Go's `big.Rat` marshals it (`MarshalText`): in lowest terms, `num/den`, or the
/// bare integer when the denominator is 1 (`"1000"`, `"5/2"`).
pub(super) fn rat_text(price: Price) -> String {
    let num = u128::from(price.per_unit.unsigned_abs());
    let den = u128::from(price.pixels_per_unit.unsigned_abs());
    let g = gcd(num, den).max(1);
    match (num / g, den / g) {
        (n, 1) => n.to_string(),
        (n, d) => format!("{n}/{d}"),
    }
}

/// Greatest common divisor.
pub(super) fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i64, d: i64) -> Price {
        Price::new(n, d).unwrap()
    }

    #[test]
    fn prices_read_as_go_writes_rats() {
        assert_eq!(rat_text(p(1000, 1)), "1000");
        assert_eq!(rat_text(p(10, 4)), "5/2");
        assert_eq!(rat_text(p(0, 7)), "0");
        assert_eq!(rat_text(p(3, 9)), "1/3");
    }
}
