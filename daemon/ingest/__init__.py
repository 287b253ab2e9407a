"""Files in: every way a file arrives ends in one pipeline.

endpoints/ (hosted FTP and SFTP), ``watch`` (drop folders) and ``pull``
(remote SFTP folders) hand complete files to ``intake``, which records and
claims them into the spool; ``dispatch`` runs them one at a time per source
or market; ``process`` reads each in the parser worker (``contained``) and
applies it in one transaction (``apply_feed``, ``apply_market``), then files
it. ``pipeline`` assembles the lot; ``held`` and ``retention`` do the rest.
"""
