"""A one-view shop: orders that take stock off products, exposed once per implementation."""
