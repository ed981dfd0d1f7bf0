package cluster

import (
	"slices"

	"github.com/segmentio/kafka-go"
)

// balancer is the group's assignor: a sticky, balanced one. Every member
// gets ⌊n/m⌋ or ⌈n/m⌉ of the n partitions; within that it keeps the
// partitions its metadata says it owned, so that a partition returns to
// the node whose state has it (no rebuild from offset 0); the rest go, by
// ascending partition, to the members with room, by member id.
type balancer struct {
	// meta returns this member's metadata for the next join.
	meta func() Meta
}

// protocolName names the assignor; every member of a group must speak it.
const protocolName = "affinity-sticky-v1"

func (balancer) ProtocolName() string { return protocolName }

func (b balancer) UserData() ([]byte, error) {
	m := b.meta()
	return AppendMeta(nil, &m), nil
}

func (balancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	byTopic := map[string][]int{}
	for _, p := range partitions {
		byTopic[p.Topic] = append(byTopic[p.Topic], p.ID)
	}
	for topic, parts := range byTopic {
		slices.Sort(parts)
		var ids []string
		owned := map[string][]int{}
		for _, m := range members {
			if !slices.Contains(m.Topics, topic) {
				continue
			}
			ids = append(ids, m.ID)
			if meta, err := DecodeMeta(m.UserData); err == nil {
				owned[m.ID] = meta.Owned
			}
		}
		for id, ps := range assign(ids, owned, parts) {
			if out[id] == nil {
				out[id] = map[string][]int{}
			}
			out[id][topic] = ps
		}
	}
	return out
}

// assign deals parts among members (ids), sticky to owned; see balancer.
func assign(ids []string, owned map[string][]int, parts []int) map[string][]int {
	out := map[string][]int{}
	if len(ids) == 0 {
		return out
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	exists := map[int]bool{}
	for _, p := range parts {
		exists[p] = true
	}
	// The ⌈n/m⌉ quotas go to the members that owned the most, so that
	// the fewest partitions move.
	kept := func(id string) int {
		n := 0
		for _, p := range owned[id] {
			if exists[p] {
				n++
			}
		}
		return n
	}
	order := slices.Clone(ids)
	slices.SortStableFunc(order, func(a, b string) int { return kept(b) - kept(a) })
	quota := map[string]int{}
	for i, id := range order {
		quota[id] = len(parts) / len(ids)
		if i < len(parts)%len(ids) {
			quota[id]++
		}
	}
	taken := map[int]bool{}
	for _, id := range ids {
		prev := slices.Clone(owned[id])
		slices.Sort(prev)
		for _, p := range prev {
			if exists[p] && !taken[p] && len(out[id]) < quota[id] {
				out[id] = append(out[id], p)
				taken[p] = true
			}
		}
	}
	i := 0
	for _, p := range parts {
		if taken[p] {
			continue
		}
		for len(out[ids[i]]) >= quota[ids[i]] {
			i++
		}
		out[ids[i]] = append(out[ids[i]], p)
	}
	for id := range out {
		slices.Sort(out[id])
	}
	return out
}
