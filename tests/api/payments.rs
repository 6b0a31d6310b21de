//! The payment step of the order saga (issue 16).
