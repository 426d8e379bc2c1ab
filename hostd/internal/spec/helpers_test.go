package spec

import "encoding/json"

func jsonMarshal(s *Spec) ([]byte, error) { return json.Marshal(s) }
