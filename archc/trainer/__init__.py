"""The common trainer. Importing this package stays cheap: torch loads only when training starts.

From Python: `archc.train(spec_or_module, **config)` (archc/__init__.py)
calls archc.trainer.api.train.
"""
