"""Loaded by scripts/schemathesis (SCHEMATHESIS_HOOKS).

CPython before 3.11.8 can fail `ast.parse` with "SystemError: AST constructor recursion
depth mismatch" (gh-106905) when called deep in a stack. Hypothesis parses source files only
to describe a filter's lambda in its messages, and that error then aborts the operation's
tests as a runtime error of the fuzzer. On such interpreters the description falls back to
Hypothesis's own "<unknown>" form; generation and every check are untouched.
"""

import sys

if sys.version_info < (3, 11, 8):
    import hypothesis.internal.lambda_sources as lambda_sources

    _describe = lambda_sources._lambda_description

    def _lambda_description(f, *args, **kwargs):
        try:
            return _describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <unknown>"

    lambda_sources._lambda_description = _lambda_description
