"""Built-in board records, one module per board family; :mod:`..registry` registers them."""
