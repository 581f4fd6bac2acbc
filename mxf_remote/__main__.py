"""``python -m mxf_remote host sender recip...`` runs the dispatcher."""

from mxf_remote.remote import main

main()
