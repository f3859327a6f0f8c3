"""App service: the apps' API and one optimistic shared-state scheduler per application."""
