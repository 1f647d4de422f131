//! The trickle protocol (HTTP pub/sub of media segments) used by Livepeer live AI video.
//!
//! This crate is a placeholder: the live-video issue fills it with the server, the publisher and
//! subscriber clients and an in-memory implementation. Nothing here is functional yet.
