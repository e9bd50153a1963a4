package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// runFiles are the files a run is written to once it ends, beside its
// output: the page (-html) and the ShiViz log (-shiviz). They are created
// before the run, so that a path that cannot be written fails at once,
// not after an hour's run.
type runFiles struct{ html, shiviz *os.File }

func createFiles(cfg Config) (*runFiles, error) {
	f := &runFiles{}
	for _, want := range []struct {
		flag, path string
		file       **os.File
	}{{"-html", cfg.HTML, &f.html}, {"-shiviz", cfg.ShiViz, &f.shiviz}} {
		if want.path == "" {
			continue
		}
		file, err := os.Create(want.path)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("%s: %v", want.flag, err)
		}
		*want.file = file
	}
	return f, nil
}

func (f *runFiles) close() {
	for _, file := range []*os.File{f.html, f.shiviz} {
		if file != nil {
			file.Close()
		}
	}
}

// write writes the run's page and ShiViz log from its report and its
// trace, and closes the files.
func (f *runFiles) write(cfg Config, rep *Report, tr *recording, rend renderer) error {
	if tr == nil {
		return nil
	}
	h := tr.history(rep.Online)
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
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: writing %s: %v", flag, file.Name(), err))
		}
	}
	if f.html != nil {
		var summary strings.Builder
		rep.writeText(&summary)
		text := cfg
		text.JSON = false
		p := pageOf(rep, strings.TrimPrefix(summary.String(), "\n"), string(startLine(text)), h, rend)
		put("-html", f.html, func(w *bufio.Writer) error { return writePage(w, p) })
	}
	if f.shiviz != nil {
		put("-shiviz", f.shiviz, func(w *bufio.Writer) error { return writeShiViz(w, h, rend) })
	}
	return errors.Join(errs...)
}
