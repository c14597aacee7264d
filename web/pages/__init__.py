"""One module per page of the navigation: its routes (HTML and JSON) over the shared services."""
