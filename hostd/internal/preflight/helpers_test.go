package preflight

import (
	"io/fs"
	"os"
)

func osRoot() fs.FS { return os.DirFS("/") }
