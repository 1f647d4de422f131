//! Batch AI: the public AI API (`ai-gateway.openapi.yaml`) routed to orchestrators.

pub mod validate;
