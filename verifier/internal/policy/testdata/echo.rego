# A test policy that returns what input.want asks for.
package test.echo

kinds := {"sim-sev-snp"}

result := input.want
