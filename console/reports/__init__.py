"""Read functions behind the operations and manager console pages (no Streamlit here)."""
