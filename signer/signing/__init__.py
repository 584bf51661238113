"""PDF signing: where a signature goes on the page and what it looks like (Decree 30/2020 profiles)."""
