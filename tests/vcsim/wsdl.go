package main

// --wsdl-dir DIR: serve a vSphere WSDL (vimService.wsdl, vim.wsdl and the
// schema files they include) under /sdk/, as vCenter and ESXi do. suds-based
// clients such as fence-agents' fence_vmware_soap download it on every call
// before their first request; govmomi's vcsim serves none. VMware's files are
// not in this repository: benches/peers/fetch-vsphere-wsdl fetches vSphere
// 5.1's into target/ (see the README's benchmark section).
//
// vcsim 0.24 answers with elements a 5.1 schema does not declare (the newer
// managers in ServiceContent, UserSession's ipAddress/userAgent/callCount),
// and suds refuses undeclared elements ("Type not found"). So the served
// vim-types.xsd declares every field of the types in wsdlPatchTypes that
// govmomi has and the schema lacks, read from govmomi's own structs.

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/types"
)

var wsdlDir = flag.String("wsdl-dir", "", "serve the vSphere WSDL and schema files of this directory under /sdk/ (for suds clients such as fence_vmware_soap)")

// wsdlFiles holds the files to serve, by base name; nil without --wsdl-dir.
var wsdlFiles map[string][]byte

// The types of the calls fence_vmware_soap makes whose vcsim answers carry
// fields the 5.1 schema lacks (RetrieveServiceContent, Login).
var wsdlPatchTypes = []interface{}{types.ServiceContent{}, types.UserSession{}, types.AboutInfo{}}

// loadWSDL reads every .wsdl and .xsd file of --wsdl-dir and patches
// vim-types.xsd. Without the flag it does nothing.
func loadWSDL() error {
	if *wsdlDir == "" {
		return nil
	}
	entries, err := os.ReadDir(*wsdlDir)
	if err != nil {
		return fmt.Errorf("--wsdl-dir: %w", err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".wsdl") || strings.HasSuffix(name, ".xsd")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(*wsdlDir, name))
		if err != nil {
			return fmt.Errorf("--wsdl-dir: %w", err)
		}
		files[name] = b
	}
	if files["vimService.wsdl"] == nil || files["vim-types.xsd"] == nil {
		return fmt.Errorf("--wsdl-dir %s: no vimService.wsdl or vim-types.xsd there", *wsdlDir)
	}
	patched, added, err := declareMissingFields(string(files["vim-types.xsd"]), wsdlPatchTypes)
	if err != nil {
		return fmt.Errorf("--wsdl-dir: patching vim-types.xsd: %w", err)
	}
	files["vim-types.xsd"] = []byte(patched)
	wsdlFiles = files
	log.Printf("serving %d WSDL/schema files from %s under /sdk/; vim-types.xsd now declares %s",
		len(files), *wsdlDir, strings.Join(added, ", "))
	return nil
}

// wsdlHandler answers GET /sdk/<file> from --wsdl-dir. While it serves, it
// also counts every GET under /sdk/ in /stats (as "GET <file>"), so that a
// client's downloads are compared with others' SOAP calls; without the flag
// GETs stay uncounted, as before.
func wsdlHandler(next http.Handler) http.Handler {
	if wsdlFiles == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/sdk/") {
			next.ServeHTTP(w, r)
			return
		}
		name := path.Base(r.URL.Path)
		X.stats.add("GET " + name)
		b, ok := wsdlFiles[name]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		http.ServeContent(w, r, name, time.Time{}, strings.NewReader(string(b)))
	})
}

// declareMissingFields adds to each type's complexType in xsd an optional
// element for every field of the Go type the schema does not declare.
func declareMissingFields(xsd string, values []interface{}) (string, []string, error) {
	var added []string
	for _, v := range values {
		t := reflect.TypeOf(v)
		start := strings.Index(xsd, `<complexType name="`+t.Name()+`">`)
		if start < 0 {
			return "", nil, fmt.Errorf("no complexType %s", t.Name())
		}
		end := strings.Index(xsd[start:], "</sequence>")
		if end < 0 {
			return "", nil, fmt.Errorf("complexType %s has no sequence", t.Name())
		}
		end += start
		declared := map[string]bool{}
		for _, m := range elementName.FindAllStringSubmatch(xsd[start:end], -1) {
			declared[m[1]] = true
		}
		var extra strings.Builder
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("xml"), ",")[0]
			if f.Anonymous || name == "" || declared[name] {
				continue
			}
			xsdType, many := schemaType(f.Type)
			occurs := ""
			if many {
				occurs = ` maxOccurs="unbounded"`
			}
			fmt.Fprintf(&extra, `<element name="%s" type="%s" minOccurs="0"%s />`, name, xsdType, occurs)
			added = append(added, t.Name()+"."+name)
		}
		xsd = xsd[:end] + extra.String() + xsd[end:]
	}
	return xsd, added, nil
}

var elementName = regexp.MustCompile(`<element name="(\w+)"`)

// schemaType maps a govmomi field type to its schema type, and whether the
// element repeats.
func schemaType(t reflect.Type) (string, bool) {
	if t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 {
		s, _ := schemaType(t.Elem())
		return s, true
	}
	if t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeOf(time.Time{}):
		return "xsd:dateTime", false
	case t.Kind() == reflect.Bool:
		return "xsd:boolean", false
	case t.Kind() == reflect.Int64:
		return "xsd:long", false
	case t.Kind() == reflect.Int32:
		return "xsd:int", false
	case t.Kind() == reflect.Int16:
		return "xsd:short", false
	case t.Kind() == reflect.Int8:
		return "xsd:byte", false
	case t.Kind() == reflect.Slice: // []byte
		return "xsd:base64Binary", false
	case t.Kind() == reflect.String: // enums too: the schema types them as strings
		return "xsd:string", false
	case t.Kind() == reflect.Interface: // BaseFoo: the abstract Foo
		return "vim25:" + strings.TrimPrefix(t.Name(), "Base"), false
	}
	return "vim25:" + t.Name(), false
}
