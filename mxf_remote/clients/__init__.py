"""The protocol clients mxf-remote execs: ``smtp`` and ``qmtp`` (mxf-remote-smtpc/-qmtpc)."""
