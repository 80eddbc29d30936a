"""The composition root of Safeguarding Exchange: the ``safeguard`` CLI and the demo."""
