"""The Streamlit console: the UI only (``streamlit run console/app.py``).

Pages by role (:mod:`.pages`), the views and reports they draw (:mod:`.views`,
:mod:`.reports`), who may do what (:mod:`.auth`, :mod:`.roles`, :mod:`.throttle`,
:mod:`.oidc`) and the audit log (:mod:`.audit`). The platform it reads and acts on is
built by the process that runs it (:mod:`.host`), never by the console itself.

Importing the package loads nothing (Streamlit included); import the modules.
"""

__all__: list[str] = []
