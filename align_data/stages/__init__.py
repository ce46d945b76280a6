"""Pure batch transforms over Records: no file writes, no Ray; heavy imports inside ``setup()``."""
