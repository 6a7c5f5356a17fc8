"""Read functions and pure plotly chart builders for the console pages.

Nothing here imports Streamlit: every function takes its sources (a MetricsQuery, an
engine, a dependency map...) as arguments and is tested without a browser.
"""

__all__: list[str] = []  # import the modules: each page takes only what it draws
