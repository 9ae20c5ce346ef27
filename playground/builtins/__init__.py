"""Small built-in components: the MLP example's pieces and the framework's default outputs."""
