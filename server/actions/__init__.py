"""Verified code actions: generate, execute, keep only what passes (tests, fixes).

Pure pipelines, no LSP types: `testgen` (pytest tests for a function), `fix` (repair a
diagnostic), `verify` (syntax and name checks), `sandbox` (running code in a throwaway copy of
the workspace). The LSP glue lives in server/features/code_actions.py.
"""
