"""Tables, figures and pages: Markdown and HTML text, matplotlib figures, and the files they are written to."""
