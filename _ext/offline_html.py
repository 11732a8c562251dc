"""Keep the built site free of remote script references.

sphinx-thebe (always loaded by Jupyter Book 1) adds an inline script holding the CDN URL of
thebe, and a loader for it, to every page, even with live code switched off. The course is
read offline and its pages must reference no CDN, so both are dropped here.
"""


def _is_remote_or_thebe(script) -> bool:
    filename = str(getattr(script, "filename", "") or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return (
        filename.startswith(("http://", "https://", "//"))
        or "sphinx-thebe" in filename
        or "://" in body
    )


def _drop_remote_scripts(app, pagename, templatename, context, doctree):
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _is_remote_or_thebe(s)]


def setup(app):
    app.connect("html-page-context", _drop_remote_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
