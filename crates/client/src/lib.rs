//! Async client library for OpenClaw-protocol gateways.
//!
//! The identity, token cache and bounded-retry logic are built with the
//! client/CLI work; until then the CLI talks to the gateway directly.
