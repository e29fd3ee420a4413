package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/types"
)

// A stand-in for vSphere 5.1's vim-types.xsd: the three patched types with
// some of their 5.1 fields.
const miniTypes = `<schema>
<complexType name="AboutInfo"><complexContent><extension base="vim25:DynamicData"><sequence>
<element name="name" type="xsd:string" /></sequence></extension></complexContent></complexType>
<complexType name="ServiceContent"><complexContent><extension base="vim25:DynamicData"><sequence>
<element name="rootFolder" type="vim25:ManagedObjectReference" />
<element name="about" type="vim25:AboutInfo" /></sequence></extension></complexContent></complexType>
<complexType name="UserSession"><complexContent><extension base="vim25:DynamicData"><sequence>
<element name="key" type="xsd:string" /></sequence></extension></complexContent></complexType>
</schema>`

func TestDeclareMissingFields(t *testing.T) {
	out, added, err := declareMissingFields(miniTypes, []interface{}{types.ServiceContent{}, types.UserSession{}})
	if err != nil {
		t.Fatal(err)
	}
	sc := out[strings.Index(out, `name="ServiceContent"`):strings.Index(out, `name="UserSession"`)]
	us := out[strings.Index(out, `name="UserSession"`):]
	for _, want := range []string{
		`<element name="serviceManager" type="vim25:ManagedObjectReference" minOccurs="0" />`,
		`<element name="vStorageObjectManager" type="vim25:ManagedObjectReference" minOccurs="0" />`,
		`<element name="propertyCollector" type="vim25:ManagedObjectReference" minOccurs="0" />`,
	} {
		if !strings.Contains(sc, want) {
			t.Errorf("ServiceContent lacks %s", want)
		}
	}
	for _, want := range []string{
		`<element name="ipAddress" type="xsd:string" minOccurs="0" />`,
		`<element name="callCount" type="xsd:long" minOccurs="0" />`,
		`<element name="loginTime" type="xsd:dateTime" minOccurs="0" />`,
		`<element name="extensionSession" type="xsd:boolean" minOccurs="0" />`,
	} {
		if !strings.Contains(us, want) {
			t.Errorf("UserSession lacks %s", want)
		}
	}
	// Declared fields stay as they were, once; additions go inside the sequence.
	for _, name := range []string{`name="rootFolder"`, `name="about"`, `name="key"`} {
		if n := strings.Count(out, name); n != 1 {
			t.Errorf("%s declared %d times", name, n)
		}
	}
	if !strings.Contains(us, `minOccurs="0" /></sequence>`) {
		t.Errorf("UserSession's additions are not at the end of its sequence: %s", us)
	}
	for _, a := range added {
		if a == "ServiceContent.rootFolder" || a == "UserSession.key" {
			t.Errorf("re-declared %s", a)
		}
	}
	if _, _, err := declareMissingFields(miniTypes, []interface{}{types.HostConfigInfo{}}); err == nil {
		t.Error("a type the schema lacks was not refused")
	}
}

func TestWSDLHandler(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"vimService.wsdl": "<definitions/>", "vim-types.xsd": miniTypes, "notes.txt": "x"}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldDir, oldFiles, oldX := *wsdlDir, wsdlFiles, X
	defer func() { *wsdlDir, wsdlFiles, X = oldDir, oldFiles, oldX }()
	X = newExt("vcenter")

	*wsdlDir = ""
	if err := loadWSDL(); err != nil || wsdlFiles != nil {
		t.Fatalf("without --wsdl-dir: %v, %d files", err, len(wsdlFiles))
	}
	*wsdlDir = filepath.Join(dir, "missing")
	if err := loadWSDL(); err == nil {
		t.Fatal("a missing --wsdl-dir was accepted")
	}
	*wsdlDir = dir
	if err := loadWSDL(); err != nil {
		t.Fatal(err)
	}
	passed := 0
	h := wsdlHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		passed++
		w.WriteHeader(http.StatusNotFound)
	}))
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	if rec := get("GET", "/sdk/vimService.wsdl"); rec.Code != 200 || rec.Body.String() != "<definitions/>" {
		t.Errorf("vimService.wsdl: %d %q", rec.Code, rec.Body.String())
	}
	if rec := get("GET", "/sdk/vim-types.xsd"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `name="cryptoManager"`) {
		t.Errorf("vim-types.xsd: %d, patched: %v", rec.Code, strings.Contains(rec.Body.String(), "cryptoManager"))
	}
	if rec := get("GET", "/sdk/notes.txt"); rec.Code != 404 {
		t.Errorf("notes.txt was served: %d", rec.Code)
	}
	get("POST", "/sdk")
	get("GET", "/about")
	if passed != 3 {
		t.Errorf("%d requests reached vcsim, want 3 (notes.txt, POST /sdk, /about)", passed)
	}
	s := X.stats.snapshot()
	if s["total"] != 3 {
		t.Errorf("counted %v, want the 3 GETs under /sdk/: %v", s["total"], s["by_method"])
	}
}
