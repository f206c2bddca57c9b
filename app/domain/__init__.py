"""Business rules: check, then do. Functions here take an explicit session and
keyword-only arguments, raise typed errors from ``errors``, and record an
``Event`` row in the same transaction as every change they make. Nothing here
imports the web or realtime layers."""
