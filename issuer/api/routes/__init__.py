"""Route modules: OpenID4VCI endpoints, status lists, the agency admin API."""
