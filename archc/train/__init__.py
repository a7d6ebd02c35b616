"""The common trainer. Importing this package stays cheap: torch loads only when training starts."""
