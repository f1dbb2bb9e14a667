"""Network definitions (torch and numpy only, never engine or streaming) and small shipped weights."""
