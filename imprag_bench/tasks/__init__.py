"""Task adapters: what is asked, never how it is answered."""
