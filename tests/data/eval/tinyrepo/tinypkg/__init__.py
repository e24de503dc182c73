"""A tiny package for the evaluation harness's end-to-end test."""
