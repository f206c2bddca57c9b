"""Helpers that the tests and the load generators under bench/ share."""
