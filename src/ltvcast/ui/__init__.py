"""The analyst web app: server-rendered pages on the service (``ltvcast serve --ui``, ``ltvcast ui``); docs/ui.md."""
