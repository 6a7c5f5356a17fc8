"""Read functions behind the operations and manager console pages (no Streamlit here)."""

__all__: list[str] = []  # import the modules: each page takes only what it draws
