"""Long-lived Ray actors and the pure cores they host."""
