package main

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// coreFiles are the protocol: a peer's step machine, the room logic and
// their vocabulary. They are pure (no goroutines, channels, clocks or
// I/O), and data flows into them, never back up: none of them names
// anything declared in a driver or an output file.
var coreFiles = []string{"chat.go", "event.go", "links.go", "peer.go", "record.go", "slots.go", "stability.go"}

// coreImports are the packages a core file may import.
var coreImports = []string{"cmp", "encoding/binary", "hash/maphash", "iter", "math", "math/bits", "math/rand/v2", "slices", "strconv", "time"}

// The layering holds: a core file names nothing of the drivers or the
// outputs, imports only what pure code needs, starts no goroutine, uses
// no channel and reads no clock.
func TestLayering(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.Default()}
	pkg, err := conf.Check("chatsim", fset, files, info)
	if err != nil {
		t.Fatal(err)
	}
	isCore := func(pos token.Pos) bool {
		return slices.Contains(coreFiles, filepath.Base(fset.Position(pos).Filename))
	}
	cores := 0
	for _, f := range files {
		if !isCore(f.Pos()) {
			continue
		}
		cores++
		for _, imp := range f.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); !slices.Contains(coreImports, p) {
				t.Errorf("%s imports %s", fset.Position(imp.Pos()), p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s starts a goroutine", fset.Position(n.Pos()))
			case *ast.ChanType, *ast.SendStmt, *ast.SelectStmt:
				t.Errorf("%s uses a channel", fset.Position(n.Pos()))
			case *ast.UnaryExpr:
				if n.Op == token.ARROW {
					t.Errorf("%s receives from a channel", fset.Position(n.Pos()))
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "time" && slices.Contains([]string{"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"}, n.Sel.Name) {
					t.Errorf("%s reads the clock: time.%s", fset.Position(n.Pos()), n.Sel.Name)
				}
			case *ast.Ident:
				obj := info.Uses[n]
				if obj == nil || obj.Pkg() != pkg || obj.Parent() != pkg.Scope() {
					return true // not a package-level name of chatsim
				}
				if !isCore(obj.Pos()) {
					t.Errorf("%s names %s, declared in %s", fset.Position(n.Pos()), n.Name, filepath.Base(fset.Position(obj.Pos()).Filename))
				}
			}
			return true
		})
	}
	if cores != len(coreFiles) {
		t.Errorf("found %d of the %d core files", cores, len(coreFiles))
	}
}
