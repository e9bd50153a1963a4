package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// runFiles are the files a run is written to once it ends, beside its
// output: the page (-html) and the ShiViz log (-shiviz). Each is written
// to a temporary file beside its path, created before the run, so that a
// path that cannot be written fails at once, not after an hour's run; it
// takes the path's place only once it is whole, so that a run killed
// half way leaves what was there before.
type runFiles struct {
	html, shiviz *os.File
	paths        map[*os.File]string
}

func createFiles(cfg Config) (*runFiles, error) {
	f := &runFiles{paths: make(map[*os.File]string)}
	for _, want := range []struct {
		flag, path string
		file       **os.File
	}{{"-html", cfg.HTML, &f.html}, {"-shiviz", cfg.ShiViz, &f.shiviz}} {
		if want.path == "" {
			continue
		}
		mode := os.FileMode(0o644) // as os.Create would, under the usual umask
		if fi, err := os.Stat(want.path); err == nil {
			if fi.IsDir() {
				f.close()
				return nil, fmt.Errorf("%s: %s is a directory", want.flag, want.path)
			}
			mode = fi.Mode().Perm() // a file written again keeps its mode
		} else if strings.HasSuffix(want.path, "/") {
			f.close()
			return nil, fmt.Errorf("%s: %s names a directory", want.flag, want.path)
		}
		file, err := os.CreateTemp(filepath.Dir(want.path), "."+filepath.Base(want.path)+".*")
		if err != nil {
			f.close()
			return nil, fmt.Errorf("%s: cannot write %s: %v", want.flag, want.path, errors.Unwrap(err))
		}
		*want.file = file
		f.paths[file] = want.path
		file.Chmod(mode)
	}
	return f, nil
}

// close removes the temporary files that were not written.
func (f *runFiles) close() {
	for file := range f.paths {
		file.Close()
		os.Remove(file.Name())
	}
}

// write writes the run's page and ShiViz log from its report and its
// trace, and closes the files.
func (f *runFiles) write(cfg Config, rep *Report, rc *recording, rend renderer) error {
	defer f.close()
	if rc == nil {
		return nil
	}
	h := rc.history(rep.Online)
	var errs []error
	put := func(flag string, file *os.File, write func(*bufio.Writer) error) {
		w := bufio.NewWriter(file)
		err := write(w)
		if err == nil {
			err = w.Flush()
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(file.Name(), f.paths[file])
		}
		if err == nil {
			delete(f.paths, file)
		} else {
			errs = append(errs, fmt.Errorf("%s: writing %s: %v", flag, f.paths[file], err))
		}
	}
	if f.html != nil {
		var summary strings.Builder
		rep.writeText(&summary)
		text := cfg
		text.JSON, text.Follow = false, nil // the page shows everyone, as text
		p := pageOf(rep, strings.TrimPrefix(summary.String(), "\n"), string(startLine(text)), h, rend)
		put("-html", f.html, func(w *bufio.Writer) error { return writePage(w, p) })
	}
	if f.shiviz != nil {
		put("-shiviz", f.shiviz, func(w *bufio.Writer) error { return writeShiViz(w, h, rend) })
	}
	return errors.Join(errs...)
}
