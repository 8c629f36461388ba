"""Test support: real OPA semantics (PyPI opa-golib-python-bindings, OPA v1.20 compiled in) behind gapseal's engine
interface and behind a loopback HTTP server that speaks OPA's REST Policy and Data APIs.

No ``opa`` executable can be installed here, so these stand in for an OPA server in tests: the evaluator is OPA's own
Go code, only the HTTP layer is ours. Test-only: the bindings declare Python >= 3.14 and are installed with
``pip install --ignore-requires-python`` (Makefile venv step), so they cannot be a declared dependency.
"""
