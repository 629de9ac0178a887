//! The relstore HTTP server (Sentry release-files protocol).
