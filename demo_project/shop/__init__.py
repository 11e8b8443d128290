"""The shop: products, orders taken through a form and an API, and comments."""
