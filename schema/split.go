package schema

import "bytes"

// chunk is a byte range of a file holding (normally) one YAML document.
// line0 is the number of lines before it in the file; node lines inside the
// chunk are relative to its start.
type chunk struct {
	start, end int
	line0      int
}

// splitDocuments cuts a YAML stream into per-document chunks by looking for
// the "---" and "..." markers at the start of a line, so that documents can
// be parsed independently: in parallel, and without one document's syntax
// error hiding the documents after it.
//
// This is sound because YAML forbids a marker line inside any document
// content (the c-forbidden production), quoted and block scalars included,
// so a line-based scan finds exactly the boundaries a full parser would. A
// "---" line starts a new chunk only when the current one already holds
// content; directives, comments and blank lines before it stay with the
// document they precede. Chunks with nothing but comments are dropped. A
// chunk that still holds several documents (we never rely on that not
// happening) is handled by the caller, which parses every document of every
// chunk.
//
// Input whose line breaks are not all "\n" or "\r\n" is not split: UTF-16
// and UTF-32 (recognised by a byte order mark or leading zero bytes), and
// input with a lone "\r", which YAML also takes as a line break.
func splitDocuments(data []byte) []chunk {
	if len(data) >= 2 && (data[0] == 0xFE && data[1] == 0xFF || data[0] == 0xFF && data[1] == 0xFE) ||
		len(data) >= 4 && data[0] == 0 && data[1] == 0 || hasLoneCR(data) {
		if len(data) == 0 {
			return nil
		}
		return []chunk{{0, len(data), 0}}
	}
	var chunks []chunk
	start, startLine := 0, 0
	content := false
	line := 0
	for off := 0; off < len(data); line++ {
		end := len(data)
		if nl := bytes.IndexByte(data[off:], '\n'); nl >= 0 {
			end = off + nl + 1
		}
		l := data[off:end]
		if off == 0 {
			l = bytes.TrimPrefix(l, []byte("\xEF\xBB\xBF"))
		}
		switch {
		case isMarker(l, '-'):
			if content {
				chunks = append(chunks, chunk{start, off, startLine})
				start, startLine = off, line
			}
			content = true
		case isMarker(l, '.'):
			if content {
				chunks = append(chunks, chunk{start, end, startLine})
			}
			start, startLine = end, line+1
			content = false
		case !content && isBlank(l):
			// Comments, blank lines and directives before a document
			// belong to it but do not start it.
		default:
			content = true
		}
		off = end
	}
	if content {
		chunks = append(chunks, chunk{start, len(data), startLine})
	}
	return chunks
}

// isMarker reports whether line is a document marker made of three c
// characters ("---" or "...") followed by white space or the end of line.
func isMarker(line []byte, c byte) bool {
	if len(line) < 3 || line[0] != c || line[1] != c || line[2] != c {
		return false
	}
	if len(line) == 3 {
		return true
	}
	switch line[3] {
	case ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// isBlank reports whether line carries no document content: it is empty,
// white space, a comment or a directive.
func isBlank(line []byte) bool {
	if len(line) > 0 && line[0] == '%' {
		return true
	}
	line = bytes.TrimLeft(line, " \t\r\n")
	return len(line) == 0 || line[0] == '#'
}

func hasLoneCR(data []byte) bool {
	for i := bytes.IndexByte(data, '\r'); i >= 0; {
		if i+1 == len(data) || data[i+1] != '\n' {
			return true
		}
		next := bytes.IndexByte(data[i+1:], '\r')
		if next < 0 {
			return false
		}
		i += 1 + next
	}
	return false
}
