"""The web console at /ui on the admin port (``routes``), its views (``model``) and static files."""
