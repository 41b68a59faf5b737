"""`mailseg view`: a local web app over an output folder (Streamlit), and the read-only queries under it.

queries.py answers (DuckDB and pyarrow dataset scans with predicate and column pushdown, streamed CSV
export) over results.py (the published folder, opened read-only) and filters.py (which users), and knows
nothing of the web; app.py is the Streamlit page script over it; serve.py is the server (Streamlit's
ASGI app plus the streamed /export.csv route); launch.py starts it. Needs the `view` extra for the web part.
"""
