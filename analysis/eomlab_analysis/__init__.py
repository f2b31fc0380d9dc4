"""Reading and reporting eomlab studies: `load` reads run files and the catalog lazily (including the
written prefix of unfinished runs); `report` turns a study into Markdown, CSV tables and PNG plots."""
