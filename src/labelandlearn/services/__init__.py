"""Domain operations shared by the web pages, the JSON API and the CLI."""
