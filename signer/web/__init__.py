"""Server-rendered pages: the key holder's phone web app at ``/m/``."""
